"""The research methods as thin recipes over the shared layers: RAM (:mod:`anyrestore.methods.ram`)."""
