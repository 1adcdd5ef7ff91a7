"""Foundations every layer uses: config machinery, YAML loading, errors, paths, CPU probes, memory."""
