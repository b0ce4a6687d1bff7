"""Reading the test dialog out of a response, for the tests of the dialog, test settings and test connector."""
import re

DIALOG = re.compile(r'<dialog open id="test-dialog".*?</dialog>', re.S)


def text_of(response) -> str:
    return response.get_data(as_text=True)


def dialog_of(html: str) -> str:
    """The open test dialog in a page or fragment."""
    return DIALOG.search(html).group(0)


def facts_of(dialog: str) -> dict:
    """The facts the dialog lists ("Server reply", "Access token", ...) by their names."""
    return dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", dialog))
