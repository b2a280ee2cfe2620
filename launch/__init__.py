"""Entry points: `python -m launch.train --config=experiments/<recipe>.py:<size> --workdir=DIR`."""
