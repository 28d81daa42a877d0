import sys

from ci.cli import main
from ci.quick_exit import quick_exit

quick_exit(main(sys.argv[1:]))
