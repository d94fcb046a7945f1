"""`python -m cluster.chaos run|node-loss …`: the fault scenarios."""

import sys

from cluster.chaos.scenarios import main

sys.exit(main())
