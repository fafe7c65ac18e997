"""End to end in a real browser (Debian's headless Chromium through Selenium): the dashboard
page (change layer and method, upload a photo, watch a live inversion and stop it) and the
HTML report (every image loads, usable at a phone's width), with no console errors."""
import time

import pytest
import torch

pytest.importorskip("flask")

import cnnviz  # noqa: E402
from cnnviz.app import _headless  # noqa: E402

pytestmark = pytest.mark.skipif(bool(_headless.missing()), reason=_headless.missing() or "browser present")


def photo(seed: int, side: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (side, side, 3), dtype=torch.uint8, generator=g)


@pytest.fixture(scope="module")
def browser():
    driver = _headless.start()
    yield driver
    _headless.close(driver)


@pytest.fixture(scope="module")
def net():
    return cnnviz.zoo.cifar_resnet(20).eval()


def until(driver, condition, timeout=30, what="condition"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d), message=what)


def pane_title(driver) -> str:
    return driver.execute_script("const h = document.querySelector('#pane-a h3'); return h ? h.textContent : '';")


def test_dashboard_in_the_browser(browser, net, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    upload = tmp_path / "my_upload.png"
    cnnviz.save_image(photo(9), str(upload))
    with cnnviz.dashboard(net, [photo(1)], samples=False) as board:
        browser.get(board.url)
        until(browser, lambda d: d.execute_script("return document.body.dataset.ready") == "1", what="page ready")
        until(browser, lambda d: "Feature maps" in pane_title(d), what="first feature maps")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#predictions li")) == 5
        # Change the layer, then the method.
        Select(browser.find_element(By.ID, "layer")).select_by_value("layer1")
        until(browser, lambda d: pane_title(d).endswith("layer1"), what="layer1 feature maps")
        until(browser, lambda d: len(Select(d.find_element(By.ID, "filter")).options) == 16, what="16 filters")
        Select(browser.find_element(By.ID, "method")).select_by_value("saliency")
        until(browser, lambda d: pane_title(d).startswith("Saliency"), what="saliency")
        # Upload a photo: it becomes the selected image and is explained.
        browser.find_element(By.ID, "upload").send_keys(str(upload))
        until(browser, lambda d: d.execute_script("return document.body.dataset.uploaded || ''"), what="upload")
        uploaded = browser.execute_script("return document.body.dataset.uploaded")
        assert Select(browser.find_element(By.ID, "image")).first_selected_option.text == "my_upload.png"
        until(browser, lambda d: "my_upload.png" in pane_title(d) and
              d.execute_script("return document.body.dataset.jobState") == "done", what="saliency on the upload")
        assert uploaded.startswith("u")
        # A live inversion: the image updates, then the stop button ends it.
        steps = browser.find_element(By.ID, "iterations")
        steps.clear()
        steps.send_keys("2000")
        Select(browser.find_element(By.ID, "method")).select_by_value("inversion")
        seen = set()

        def live_updates(d):
            step = d.execute_script("const i = document.getElementById('live-a'); return i ? i.dataset.step : null;")
            if step:
                seen.add(step)
            return len(seen) >= 3

        until(browser, live_updates, timeout=60, what="three live images")
        assert browser.execute_script("return document.getElementById('live-a').naturalWidth") > 0
        browser.find_element(By.ID, "stop").click()
        until(browser, lambda d: d.execute_script("return document.body.dataset.jobState") == "stopped",
              what="stopped")
        assert "stopped at step" in browser.find_element(By.ID, "status-text").text
        # Compare two layers for one image.
        browser.find_element(By.ID, "compare").click()
        Select(browser.find_element(By.ID, "method")).select_by_value("grad_cam")
        Select(browser.find_element(By.ID, "b-layer")).select_by_value("layer2")
        until(browser, lambda d: d.execute_script(
            "const h = document.querySelector('#pane-b h3'); return h && h.textContent.endsWith('layer2') && "
            "document.body.dataset.jobState === 'done';"), what="compare panes")
        assert browser.find_element(By.ID, "pane-b").is_displayed()
        errors = _headless.console_errors(browser)
        assert not errors, errors
    assert not [t for t in __import__("threading").enumerate() if t.name.startswith("cnnviz-job-") and t.is_alive()]


def test_report_in_the_browser(browser, net, tmp_path):
    out = tmp_path / "report.html"
    cnnviz.report([photo(3, 32)], net, str(out), inversion_steps=10, layers=["layer1", "layer3"], progress=False)
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    browser.get(out.as_uri())
    until(browser, lambda d: d.execute_script("return document.readyState") == "complete", what="report loaded")
    counts = browser.execute_script(
        "const imgs = [...document.images]; return [imgs.length, imgs.filter(i => i.complete && i.naturalWidth > 0)"
        ".length];")
    assert counts[0] >= 12 and counts[0] == counts[1], counts
    assert not _headless.console_errors(browser)
    _headless.phone(browser)
    browser.refresh()
    until(browser, lambda d: d.execute_script("return document.readyState") == "complete", what="report reloaded")
    doc, view = _headless.overflow(browser)
    assert view <= 400 and doc <= view, (doc, view)
    widest = browser.execute_script("return Math.max(...[...document.images].map(i => i.getBoundingClientRect().right));")
    assert widest <= view
    assert not _headless.console_errors(browser)
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_dashboard_at_a_phone_width(browser, net):
    with cnnviz.dashboard(net, [photo(2)], samples=False) as board:
        _headless.phone(browser)
        try:
            browser.get(board.url)
            until(browser, lambda d: d.execute_script("return document.body.dataset.jobState") == "done",
                  what="first result")
            time.sleep(0.2)
            doc, view = _headless.overflow(browser)
            assert doc <= view, (doc, view)
            assert not _headless.console_errors(browser)
        finally:
            browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
