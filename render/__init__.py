"""fdsl.render: offscreen rendering of ShapeNetCore models (or a built-in procedural mesh set)
from many viewpoints into fdsl shards, with each view's silhouette area and camera pose.

Entry points: ``fdsl.render.build.render_shapenet`` (the ``render-shapenet`` command) and
``fdsl.render.source.RenderSource`` (the ShardSource behind it).
"""
