from django.contrib.auth import views as auth_views
from django.urls import path

from engagements import accounts, digest_views, erasure_views

app_name = "accounts"

urlpatterns = [
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", accounts.PasswordChangeView.as_view(), name="password_change"),
    path("password/done/", accounts.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("password/reset/", accounts.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password/reset/sent/", accounts.PasswordResetDoneView.as_view(), name="password_reset_done"
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        accounts.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/complete/",
        accounts.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("two-factor/", accounts.two_factor, name="two_factor"),
    path("two-factor/setup/", accounts.two_factor_setup, name="two_factor_setup"),
    path("two-factor/verify/", accounts.two_factor_verify, name="two_factor_verify"),
    path(
        "two-factor/backup-codes/", accounts.two_factor_backup_codes, name="two_factor_backup_codes"
    ),
    path("two-factor/disable/", accounts.two_factor_disable, name="two_factor_disable"),
    path("preferences/", digest_views.preferences, name="preferences"),
    path("erase/", erasure_views.erase, name="erase"),
    path("erase/done/", erasure_views.erase_done, name="erase_done"),
]
