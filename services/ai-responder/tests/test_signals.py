"""The rule-based signal detector on Spanish and English samples (no broker, no database)."""

import pytest
from tistis_ai_responder.signals import detect_signals, normalize
from tistis_common.events import Signal

S = Signal


class TestDetectSignals:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            # budget
            ("Hola, ¿CUÁNTO cuesta una limpieza?", [S.BUDGET_MENTIONED]),
            ("¿Qué precio tienen los implantes?", [S.BUDGET_MENTIONED]),
            ("Tengo un presupuesto de $5,000", [S.BUDGET_MENTIONED]),
            ("¿Son 1500 pesos?", [S.BUDGET_MENTIONED]),
            ("How much is a cleaning?", [S.BUDGET_MENTIONED]),
            ("What are your prices?", [S.BUDGET_MENTIONED]),
            # urgent
            ("Me DUELE mucho la muela, es URGENTE", [S.URGENT]),
            ("Tengo mucho dolor", [S.URGENT]),
            ("Es una emergencia", [S.URGENT]),
            ("It's an emergency, my tooth hurts", [S.URGENT]),
            ("I need it as soon as possible", [S.URGENT]),
            # not interested (and never also interested)
            ("No me interesa, gracias", [S.NOT_INTERESTED]),
            ("Ya no me interesan sus promociones", [S.NOT_INTERESTED]),
            ("I'm not interested", [S.NOT_INTERESTED]),
            ("Not interested in whitening", [S.NOT_INTERESTED]),
            # interested
            ("Quiero una cita para limpieza", [S.INTERESTED]),
            ("Me interesa el blanqueamiento", [S.INTERESTED]),
            ("¿Me dan información de ortodoncia?", [S.INTERESTED]),
            ("Quiero informes de los implantes", [S.INTERESTED]),
            ("I'd like to book an appointment", [S.INTERESTED]),
            ("I'm interested in implants", [S.INTERESTED]),
            # comparing
            ("Estoy comparando opciones", [S.COMPARING]),
            ("En otra clínica me dijeron otra cosa", [S.COMPARING]),
            ("I'm comparing with another clinic", [S.COMPARING]),
            # decision maker
            ("Yo decido en mi casa", [S.DECISION_MAKER]),
            ("Es para mí y mi familia", [S.DECISION_MAKER]),
            ("Soy el titular de la póliza", [S.DECISION_MAKER]),
            ("I make the decisions here", [S.DECISION_MAKER]),
            # several at once, in the order of Signal
            (
                "Quiero una cita urgente, ¿cuánto cuesta? Es para mí y mi familia",
                [S.INTERESTED, S.URGENT, S.BUDGET_MENTIONED, S.DECISION_MAKER],
            ),
            ("Tengo una cotización de otro dentista", [S.BUDGET_MENTIONED, S.COMPARING]),
            # nothing
            ("Hola, buenos días", []),
            ("Gracias", []),
            ("", []),
        ],
    )
    def test_sample_yields_its_signals(self, text, expected):
        assert detect_signals(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "Visita http://promo.example.xyz ya",
            "Entra a www.ganadinero.com",
            "Checa bit.ly/abc123",
            "GANA DINERO desde casa, haz clic",
            "Congratulations, you have won a prize",
            "Earn money fast with crypto",
            "compra compra compra compra compra",
            "Oferta limitada, compra ya. Oferta limitada, compra ya. Oferta limitada, compra ya",
            "!!!!!!!!!!!!!!!!!!!!",
            # a link wins over everything else: a chain letter is not a lead
            "Me interesa, más información en https://spam.example.com",
        ],
    )
    def test_links_and_spam_patterns_are_spam_only(self, text):
        assert detect_signals(text) == [S.SPAM]

    def test_accents_and_case_do_not_matter(self):
        assert detect_signals("CUANTO CUESTA") == detect_signals("cuánto cuesta") == [
            S.BUDGET_MENTIONED
        ]
        assert detect_signals("INFORMACIÓN") == detect_signals("informacion") == [S.INTERESTED]

    @pytest.mark.parametrize(
        "text", ["Es muy dolorosa la extracción?", "aprecio su atención", "urgentemente no"]
    )
    def test_words_match_whole_words_only(self, text):
        assert detect_signals(text) == []

    @pytest.mark.parametrize(
        "text", ["No no no no, gracias", "Hola?????", "jajajajaja", "Sí, sí, perfecto, sí"]
    )
    def test_ordinary_repetition_is_not_spam(self, text):
        assert S.SPAM not in detect_signals(text)

    def test_a_very_long_message_is_read_up_to_a_limit(self):
        words = " ".join(f"palabra{i}" for i in range(2_000))
        assert detect_signals("cuánto cuesta " + words) == [S.BUDGET_MENTIONED]
        assert detect_signals(words + " cuánto cuesta") == []

    @pytest.mark.parametrize("text", [
        "Estoy aquí https://maps.app.goo.gl/Xy7PqR2aBc1 quiero una cita",
        "Mi casa: https://www.google.com/maps/place/Monterrey,+N.L./@25.6,-100.3,12z quiero una cita",
        "Llego por https://waze.com/ul?ll=25.67,-100.31 quiero una cita",
        "https://maps.apple.com/?ll=25.67,-100.31 quiero una cita",
    ])
    def test_a_map_link_is_a_place_not_spam(self, text):
        assert detect_signals(text) == [S.INTERESTED]

    def test_a_map_link_does_not_excuse_another_link(self):
        assert detect_signals("https://maps.app.goo.gl/X y bit.ly/promo") == [S.SPAM]

    def test_an_email_address_is_not_a_link(self):
        assert detect_signals("Mi correo es maria@gmail.com, me interesa") == [S.INTERESTED]

    def test_normalize_keeps_plain_words_only(self):
        assert normalize("¿Cuánto  CUESTA la Ortodoncia?") == "cuanto cuesta la ortodoncia"
