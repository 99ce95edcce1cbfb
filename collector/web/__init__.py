"""`synfin web`: the textbook's state diagram and each connection's ladder, live in a browser.

diagram.py draws the diagram from the engine's table of edges; hub.py keeps what the page
shows (counts per state, the arrows taken, recent connections and their ladders) within fixed
bounds and pushes changes to each open page; app.py serves the page, its script and the
event stream behind the same web configuration as /metrics.
"""
