"""The test shop ("Kettle & Co"): static pages under tests/support/shop/, served on 127.0.0.1.

End-to-end tests browse it with the recording extension; `python -m tests.support.shop_site`
serves it in the foreground for trying the extension by hand.

    with serve_shop() as base_url:      # "http://127.0.0.1:PORT"
        ...

Pages (PAGES): home, product list with search (`?q=`) and category filters that change the
URL with `history.pushState` (no page load), product pages (`/product.html?id=…`) with an
"Added to cart" `<dialog>`, the cart, and a checkout form with name, email, phone, card fields
and an optional "Create an account" password. The checkout never submits to a server: its
script moves to `/confirmation.html?order=N`, so no field value leaves the page on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cluster.doubles.net import free_port

__all__ = ["PAGES", "PRODUCT_IDS", "SHOP_DIR", "serve_shop", "main"]

SHOP_DIR = Path(__file__).with_name("shop")
PAGES = ("/", "/products.html", "/product.html", "/cart.html", "/checkout.html", "/confirmation.html")
PRODUCT_IDS = ("blue-kettle", "steel-kettle", "french-press", "pour-over", "tea-tin", "teapot")


class _ShopHandler(SimpleHTTPRequestHandler):
    """Static files only; GET and HEAD, no directory listings, no caching."""

    def end_headers(self) -> None:
        # A browser that cached a page from an earlier test run would skip the network and
        # could differ from the files on disk now.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def list_directory(self, path: str | Path) -> Any:
        self.send_error(404, "Not found")
        return None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # tests read their own output; one line per asset is noise


# .js as text/javascript whatever the host's mime.types says (some map it to application/x-…).
_ShopHandler.extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                               ".css": "text/css", ".html": "text/html; charset=utf-8"}


@contextlib.contextmanager
def serve_shop(port: int | None = None) -> Iterator[str]:
    """Serve the shop on 127.0.0.1 (a free port unless given) until the block ends."""
    handler = partial(_ShopHandler, directory=str(SHOP_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", port or free_port()), handler)
    server.daemon_threads = True  # a browser's keep-alive connection must not hold up the exit
    thread = threading.Thread(target=server.serve_forever, name="shop-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.shop_site", description="Serve the test shop.")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    args = parser.parse_args(argv)
    with serve_shop(args.port) as url:
        print(f"test shop at {url}/  (Ctrl-C stops it)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
