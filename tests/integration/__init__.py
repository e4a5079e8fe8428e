"""Conversions, commands run as processes, real servers, kills, full disks and files written by other software."""
