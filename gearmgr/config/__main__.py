"""``python -m gearmgr.config --markdown``: print the key table of docs/configuration.md."""

import sys

from gearmgr.config.reference import main

sys.exit(main())
