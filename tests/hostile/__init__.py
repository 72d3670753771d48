"""Attacks on logferry: hostile keys, events and files, each shown to fail alone."""
