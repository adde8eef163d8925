"""Reading boxes back: verify.py examines a box or disk (every rule its consumers apply; inspect and verify
share it), render.py prints the report, boottest.py boots a box in QEMU as its provider would."""
