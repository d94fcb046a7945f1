"""`python -m cluster.autoscale`: the autoscaling demo on Ray's fake multi-node provider."""

import sys

from cluster.autoscale.demo import main

sys.exit(main())
