"""The users page and the page where a user changes their address."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render


def home(request: HttpRequest) -> HttpResponse:
    """The users and their addresses (a demo: a real site would not list them)."""
    users = get_user_model()._default_manager.order_by("pk")
    return render(request, "django_site/home.html", {"users": users})


class AddressForm(forms.Form):
    email = forms.EmailField(label="E-mail address")


@login_required
def account(request: HttpRequest) -> HttpResponse:
    """Change one's address; the bounce notice then no longer shows."""
    user = request.user
    assert isinstance(user, AbstractBaseUser)  # login_required
    field = user.get_email_field_name()
    form = AddressForm(request.POST or None, initial={"email": getattr(user, field)})
    if request.method == "POST" and form.is_valid():
        setattr(user, field, form.cleaned_data["email"])
        user.save(update_fields=[field])
        messages.success(request, "Your e-mail address was updated.")
        return redirect("home")
    return render(request, "django_site/account.html", {"form": form})
