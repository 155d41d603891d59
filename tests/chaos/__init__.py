"""A seeded chaos run against an oracle (issue 11): history, faults, expected index, diff."""
