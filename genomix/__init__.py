"""genomix: train and apply DNA sequence classifiers built on Paramixer."""

__version__ = "0.1.0"
