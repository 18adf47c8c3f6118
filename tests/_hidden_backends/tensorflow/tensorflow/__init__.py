# Put first on PYTHONPATH by tests/_subprocess.py in a child on another
# backend: `import tensorflow` fails here as it does where TensorFlow is not
# installed.
raise ImportError("hidden from this subprocess: tests/_subprocess.py")
