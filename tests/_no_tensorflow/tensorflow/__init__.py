# Put first on PYTHONPATH by tests/_subprocess.py: `import tensorflow` fails
# here as it does where TensorFlow is not installed. See that module.
raise ImportError("TensorFlow is hidden from this JAX or PyTorch subprocess")
