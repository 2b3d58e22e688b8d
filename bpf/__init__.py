"""oomtrace's BPF C sources, installed as the package data `tracer.bpf`."""
