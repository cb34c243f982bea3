import sys

from seft.cli import main

sys.exit(main())
