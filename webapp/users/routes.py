from webapp.users import bp
from webapp.web import render


@bp.get("/")
def index():
    """Placeholder until the screen is built."""
    return render("users/index.html")
