# Put first on PYTHONPATH by tests/_subprocess.py in a child on another
# backend: `import torch` fails here as it does where PyTorch is not
# installed.
raise ImportError("hidden from this subprocess: tests/_subprocess.py")
