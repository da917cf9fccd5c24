"""The bottom layer: argument checks, presets, paths, progress bars, devices and files shared between processes."""
