"""Shared pytest setup for tests/.

tests/ has no __init__.py, so pytest (default ``prepend`` import mode) puts this folder on sys.path when it
imports this file, before any test module: the shared helpers ``oracle`` (the reference comparison) and
``toy_trainer`` are imported by name, with no path manipulation in the test modules.
"""
