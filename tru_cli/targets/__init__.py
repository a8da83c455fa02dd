"""TRU's targets: for every forget item a reasoning trace and an explained refusal, written by a
backend (`generate.py`) and kept only when they do not give the forgotten answer away (`leaks.py`)."""
