"""The demo's analysis pages: one HTML page per analysis (out/analysis_<slug>.html), and an
overview page with every section, each linking its own page."""
import html
import os
from typing import List, Sequence, Tuple

STYLE = "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{padding:2px 8px}</style>"

# (slug, title, image file name in out_dir, HTML body)
Section = Tuple[str, str, str, str]


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><meta charset='utf-8'><title>cnnviz: {html.escape(title)}</title>{STYLE}"
            f"<h1>{html.escape(title)}</h1>{body}")


def write_pages(out_dir: str, overview: str, heading: str, sections: Sequence[Section]) -> List[str]:
    """Writes analysis_<slug>.html for each section and ``overview`` (a file name) with all of
    them; returns the paths written, the overview last."""
    paths = []
    parts = []
    for slug, title, image, body in sections:
        name = f"analysis_{slug}.html"
        paths.append(os.path.join(out_dir, name))
        with open(paths[-1], "w") as f:
            f.write(_page(title, f"{body}<img src='{image}' style='max-width:100%'>"
                                 f"<p><a href='{overview}'>all analyses</a></p>"))
        parts.append(f"<h2><a href='{name}'>{html.escape(title)}</a></h2>{body}"
                     f"<img src='{image}' style='max-width:100%'>")
    paths.append(os.path.join(out_dir, overview))
    with open(paths[-1], "w") as f:
        f.write(_page(heading, "".join(parts)))
    for p in paths:
        print(f"  wrote {p}")
    return paths
