from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from tistis_scheduler.spanish import corta, fecha, fecha_hora, hora

MEXICO_CITY = ZoneInfo("America/Mexico_City")


class TestSpanishDates:
    def test_the_guide_example_reads_as_written(self):
        assert fecha_hora(datetime(2024, 1, 15, 10, 0)) == "lunes 15 de enero, 10:00"

    def test_every_weekday_and_month_has_its_spanish_name(self):
        days = [fecha(datetime(2027, 2, d)) for d in range(1, 8)]
        assert days == ["lunes 1 de febrero", "martes 2 de febrero", "miércoles 3 de febrero",
                        "jueves 4 de febrero", "viernes 5 de febrero", "sábado 6 de febrero",
                        "domingo 7 de febrero"]
        months = [fecha(datetime(2027, m, 1)).split(" de ")[1] for m in range(1, 13)]
        assert months == ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio",
                          "agosto", "septiembre", "octubre", "noviembre", "diciembre"]

    def test_utc_instant_is_shown_in_the_branch_time_zone(self):
        moment = datetime(2027, 1, 11, 15, 0, tzinfo=UTC)
        assert fecha_hora(moment.astimezone(MEXICO_CITY)) == "lunes 11 de enero, 09:00"
        assert fecha_hora(moment.astimezone(ZoneInfo("America/Tijuana"))) == "lunes 11 de enero, 07:00"
        # past midnight UTC is still the evening before in Mexico
        assert fecha_hora(datetime(2027, 1, 12, 2, 30, tzinfo=UTC).astimezone(MEXICO_CITY)) == (
            "lunes 11 de enero, 20:30")

    def test_hours_use_two_digits_on_a_24_hour_clock(self):
        assert hora(datetime(2027, 1, 1, 7, 5)) == "07:05"
        assert hora(datetime(2027, 1, 1, 17, 30)) == "17:30"

    def test_short_form_fits_a_whatsapp_row_title(self):
        longest = corta(datetime(2027, 9, 29, 17, 30))  # miércoles, septiembre
        assert longest == "mié 29 sep, 17:30"
        assert len(longest) <= 24
