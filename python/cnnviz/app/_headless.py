"""A headless Debian Chromium (via Selenium) for the end-to-end tests and the demo screenshots."""
import os
import shutil
import tempfile
from typing import List, Tuple

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def missing() -> str:
    """Why the browser tests cannot run here, or '' when they can."""
    if not CHROMIUM or not CHROMEDRIVER:
        return "chromium and chromedriver are not installed (scripts/install-deps.sh installs them)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "python3-selenium is not installed (scripts/install-deps.sh installs it)"
    return ""


def start(width: int = 1280, height: int = 900):
    """A fresh headless Chromium (own profile, no background traffic) with console logging."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="cnnviz-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--disable-extensions", "--disable-sync", "--no-default-browser-check",
                 "--allow-file-access-from-files", f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The browser is another program: a sanitizer runtime preloaded into this Python
    # (`make test-asan`) must not be forced into chromedriver and chromium.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, env=env), options=options)
    driver._cnnviz_profile = profile
    return driver


def close(driver) -> None:
    """Quits the browser and removes its profile."""
    profile = getattr(driver, "_cnnviz_profile", None)
    try:
        driver.quit()
    finally:
        if profile:
            shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> List[str]:
    """The console's errors since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def phone(driver, width: int = 390, height: int = 844) -> None:
    """Emulates a phone's viewport."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True})


def overflow(driver) -> Tuple[int, int]:
    """(document width, viewport width): a page usable at this width has the first <= the second."""
    return tuple(driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth];"))


def screenshot(driver, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    driver.save_screenshot(path)
