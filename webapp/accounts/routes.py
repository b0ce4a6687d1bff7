from webapp.accounts import bp
from webapp.web import render


@bp.get("/")
def index():
    """Placeholder until the screen is built."""
    return render("accounts/index.html")
