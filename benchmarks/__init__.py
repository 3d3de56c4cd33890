"""Side-by-side measurements: each benchmark runs Atlilith and a bare baseline doing the same
work, in the same run on the same machine, and prints the ratio."""
