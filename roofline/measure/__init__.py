"""The GPU side: reference model, profiler runs, trace parsing, calibration, NVML.

Import submodules directly; this package imports nothing, so trace parsing stays torch-free."""
