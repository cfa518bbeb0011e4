import sys

from gearmgr.cli import main

sys.exit(main())
