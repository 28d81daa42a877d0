import os
import sys

from ci.cli import main

code = main(sys.argv[1:])
if "tensorflow" in sys.modules:  # local-predict: everything is written by now, and
    # TensorFlow's interpreter teardown (seconds of freeing what the OS frees) is skipped.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
