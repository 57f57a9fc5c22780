"""Geometry shared by the whole project: rotation representations and their conversions."""
