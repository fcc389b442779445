"""Side-by-side benchmarks of RetailModel against its peers (see bench/RESULTS.md)."""
