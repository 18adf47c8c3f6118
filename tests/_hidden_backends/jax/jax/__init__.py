# Put first on PYTHONPATH by tests/_subprocess.py in a child on another
# backend: `import jax` fails here as it does where JAX is not
# installed.
raise ImportError("hidden from this subprocess: tests/_subprocess.py")
