"""Tests of logferry.codecs."""
