"""Capture: pure functions that describe the running program.

Layer 3. Capture returns entities or plain data and never touches a store;
a part that fails degrades to a recorded failure and a warning, never an
exception into the user's job.
"""
