"""Bookings: services, availability, holds and the booking lifecycle, without double bookings."""
