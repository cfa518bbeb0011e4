import sys

from gearmgr.cli.main import main

sys.exit(main())
