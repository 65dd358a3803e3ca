// sluice-bench: placeholder until the benchmark lands.
print("sluice-bench")
