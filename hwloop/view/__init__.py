"""``hwloop view``: a live page in the browser (Bokeh server) that follows a campaign file or a lab
step log as it is written. ``sources`` reads the files, ``page`` draws them."""
