import sys

from roialign_suite.cli import main

sys.exit(main())
