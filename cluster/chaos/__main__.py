"""`python -m cluster.chaos run|node-loss …`: the fault scenarios."""

import sys

from cluster.chaos.run import main

sys.exit(main())
