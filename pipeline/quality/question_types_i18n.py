"""Answer-type checks of QA pairs outside English (pipeline.quality.checks runs them from its basic rules): a
where-question answered with a time, a when-question answered without one, a how-many question answered without a
number, and a question asking for a name answered without one ("Quel est le nom du dentiste ?" -> "Le dentiste").
Small word lists per language (es, fr, de, it, pt; ja and zh by characters); a language without a list gets none
of these checks. Measured on the sample corpora's LLM rows, third session (README, "Languages")."""
from __future__ import annotations

import re
import unicodedata

from pipeline.quality.text_rules import Failure


def fold(text: str) -> str:
    """Lower case without accents ("¿Dónde?" -> "¿donde?"), so that the lists need one spelling."""
    return "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", fold(text))


#: per language: question starts (regex on folded text) and answer vocabularies (folded words)
LISTS: dict[str, dict[str, str]] = {
    "es": {
        "where": r"(?:^|¿)\s*(?:donde|adonde|en que lugar|de donde)\b",
        "when": r"(?:^|¿)\s*(?:cuando|a que hora|que dia|en que dia|en que momento|hasta cuando|desde cuando)\b",
        "count": r"(?:^|¿)\s*(?:cuantos|cuantas|cuanto|cuanta)\b",
        "name": r"\bnombre\b|\bcomo se llama\b",
        "time": "lunes martes miercoles jueves viernes sabado sabados domingo domingos manana tarde noche mediodia "
                "medianoche hoy ayer anoche hora horas minuto minutos semana semanas mes meses ano anos temprano "
                "luego pronto siempre nunca antes despues durante enero febrero marzo abril mayo junio julio agosto "
                "septiembre octubre noviembre diciembre madrugada",
        "numbers": "un uno una dos tres cuatro cinco seis siete ocho nueve diez once doce veinte treinta cien ciento "
                   "mil media medio varios varias muchos muchas pocos pocas",
    },
    "fr": {
        "where": r"^\s*(?:ou|d'ou|a quel endroit|dans quel endroit|dans quel lieu)\b",
        "when": r"^\s*(?:quand|a quelle heure|quel jour|jusqu'a quand|depuis quand|a quel moment)\b",
        "count": r"^\s*(?:combien)\b",
        "name": r"\bnom\b|\bcomment s'appelle\b",
        "time": "lundi mardi mercredi jeudi vendredi samedi dimanche dimanches matin midi soir soiree nuit minuit "
                "aujourd'hui demain hier heure heures minute minutes semaine semaines mois an ans annee annees tot "
                "tard bientot toujours jamais avant apres pendant janvier fevrier mars avril mai juin juillet aout "
                "septembre octobre novembre decembre",
        "numbers": "un une deux trois quatre cinq six sept huit neuf dix onze douze vingt trente cent mille demi "
                   "demie plusieurs beaucoup peu",
    },
    "de": {
        "where": r"^\s*(?:wo|wohin|woher|an welchem ort|in welchem ort)\b",
        "when": r"^\s*(?:wann|um wie viel uhr|um wieviel uhr|an welchem tag|bis wann|seit wann)\b",
        "count": r"^\s*(?:wie viele|wie viel|wieviele|wieviel)\b",
        "name": r"\bname\b|\bnamen\b|\bwie heisst\b|\bwie heißt\b",
        "time": "montag dienstag mittwoch donnerstag freitag samstag sonntag sonntags morgen morgens mittag abend "
                "abends nacht nachts mitternacht heute gestern uhr stunde stunden minute minuten woche wochen monat "
                "monate jahr jahre fruh fruher spat spater bald immer nie vor nach wahrend januar februar marz april "
                "mai juni juli august september oktober november dezember",
        "numbers": "ein eine einen eins zwei drei vier funf sechs sieben acht neun zehn elf zwolf zwanzig dreissig "
                   "hundert tausend halb halbe mehrere viele wenige",
    },
    "it": {
        "where": r"^\s*(?:dove|in quale luogo|in che luogo|da dove)\b",
        "when": r"^\s*(?:quando|a che ora|che giorno|in quale giorno|fino a quando|da quando)\b",
        "count": r"^\s*(?:quanti|quante|quanto|quanta)\b",
        "name": r"\bnome\b|\bcome si chiama\b",
        "time": "lunedi martedi mercoledi giovedi venerdi sabato domenica domeniche mattina mattino pomeriggio sera "
                "notte mezzogiorno mezzanotte oggi domani ieri ora ore minuto minuti settimana settimane mese mesi "
                "anno anni presto tardi sempre mai prima dopo durante gennaio febbraio marzo aprile maggio giugno "
                "luglio agosto settembre ottobre novembre dicembre",
        "numbers": "un uno una due tre quattro cinque sei sette otto nove dieci undici dodici venti trenta cento "
                   "mille mezza mezzo diversi diverse molti molte pochi poche",
    },
    "pt": {
        "where": r"^\s*(?:onde|aonde|em que lugar|de onde)\b",
        "when": r"^\s*(?:quando|a que horas|que dia|em que dia|ate quando|desde quando)\b",
        "count": r"^\s*(?:quantos|quantas|quanto|quanta)\b",
        "name": r"\bnome\b|\bcomo se chama\b",
        "time": "segunda terca quarta quinta sexta sabado domingo domingos manha tarde noite meio-dia meia-noite "
                "hoje amanha ontem hora horas minuto minutos semana semanas mes meses ano anos cedo logo sempre nunca "
                "antes depois durante janeiro fevereiro marco abril maio junho julho agosto setembro outubro "
                "novembro dezembro",
        "numbers": "um uma dois duas tres quatro cinco seis sete oito nove dez onze doze vinte trinta cem cento mil "
                   "meia meio varios varias muitos muitas poucos poucas",
    },
    # ja, zh: characters (no word boundaries); the name check needs capitals and is left out
    "ja": {"where": r"どこ|どちら|何処", "when": r"いつ|何時|何曜日|何日", "count": r"いくつ|何人|何個|何本|何回|どのくらい",
           "time": "月火水木金土日曜朝昼夜晩時分秒週年午前後今明昨毎", "numbers": "一二三四五六七八九十百千万半数"},
    "zh": {"where": r"哪里|哪儿|什么地方|在哪", "when": r"什么时候|几点|哪天|星期几|何时|多久",
           "count": r"多少|几个|几位|几次|几天", "time": "年月日天星期周点分秒早晚午夜今明昨时候每",
           "numbers": "一二两三四五六七八九十百千万半几"},
}
_CJK = {"ja", "zh"}
# articles and contracted prepositions that may come with a time ("los domingos", "am Sonntag")
_ARTICLES = frozenset("el la los las le les l der die das den dem il lo gli o os as a de du des del di am um en em no "
                      "na al au".split())
#: function words per language (folded): not counted as content when an answer's grounding is measured
FUNCTION_WORDS: dict[str, frozenset] = {k: frozenset(v.split()) for k, v in {
    "es": "el la los las lo un una unos unas de del al a en y o u que se su sus mi mis tu tus es son fue era esta "
          "estan por para con sin sobre entre hasta desde muy mas ya no si le les me te nos este esta estos estas ese "
          "esa eso aquel como cual quien donde cuando hay ha han",
    "fr": "le la les l un une des de du d au aux a en et ou que qu qui se sa son ses mon ma mes ton ta tes est sont "
          "etait par pour avec sans sur sous dans entre ne pas plus tres il elle ils elles on nous vous je me te lui "
          "leur leurs ce cet cette ces y",
    "de": "der die das den dem des ein eine einen einem einer eines und oder aber dass zu im in am an auf aus bei "
          "mit nach von vor fur uber unter ist sind war waren hat haben wird es er sie wir ihr ich du sich sein seine "
          "ihre mein meine nicht kein keine sehr auch noch schon so wie",
    "it": "il lo la i gli le l un uno una di del della dei delle al alla a in e o che si suo sua suoi sue mio mia "
          "tuo tua e sono era per con senza su tra fra da dal dalla non piu molto lui lei noi voi io mi ti ci vi "
          "questo questa quello quella come",
    "pt": "o a os as um uma uns umas de do da dos das ao aos em no na nos nas e ou que se seu sua seus suas meu "
          "minha e sao era por para com sem sobre entre ate desde nao mais muito ele ela eles elas nos voce eu me te "
          "lhe este esta esse essa isso como",
}.items()}


def function_words(language: str | None) -> frozenset:
    """The folded function words of ``language`` (empty where there is no list)."""
    return FUNCTION_WORDS.get((language or "").split("-")[0].lower(), frozenset())


def answer_type(question: str, answer: str, language: str) -> Failure | None:
    """The answer is of the wrong kind for the question word, in ``language`` (None where there is no list)."""
    lists = LISTS.get(language)
    if not lists:
        return None
    q, a = fold(question.strip()), answer.strip()
    if language in _CJK:
        chars = set(re.sub(r"\W", "", a))
        timeish = bool(chars & set(lists["time"])) or bool(re.search(r"\d", a))
        numberish = bool(chars & set(lists["numbers"])) or bool(re.search(r"\d", a))
        only_time = bool(chars) and chars <= set(lists["time"]) | set(lists["numbers"]) | set("0123456789")
    else:
        words = _words(a)
        time_w, num_w = set(lists["time"].split()), set(lists["numbers"].split())
        timeish = bool(set(words) & time_w) or bool(re.search(r"\d", a))
        numberish = bool(set(words) & num_w) or bool(re.search(r"\d", a))
        only_time = bool(words) and set(words) <= time_w | num_w | _ARTICLES | {w for w in words if w.isdigit()}
    if re.search(lists["where"], q) and only_time:
        return "answer_type", "a where-question answered with a time, not a place"
    if re.search(lists["when"], q) and not timeish:
        return "answer_type", "a when-question whose answer has no time"
    if re.search(lists["count"], q) and not numberish:
        return "answer_type", "a how-many question whose answer has no number"
    name = lists.get("name")
    if name and re.search(name, q) and not _has_name(a, language):
        return "answer_type", "a question asking for a name whose answer has no name"
    return None


_OPENERS = frozenset("el la los las le les un une uno una unos unas der die das ein eine einen il lo gli o os a as um "
                     "uma es c est ce cette este esta ese esa su sus son sa ses sein seine ihr ihre".split())


def _has_name(answer: str, language: str) -> bool:
    """A capitalised word that is not the sentence's opening article or determiner (German nouns are all
    capitalised: there a name is a capitalised word the lists do not know as a common word; unknown: allowed)."""
    words = re.findall(r"[^\W\d_]+", answer)
    for i, w in enumerate(words):
        if w[:1].isupper() and not (i == 0 and fold(w) in _OPENERS) \
                and not (language == "de" and fold(w) in _GERMAN_COMMON | _OPENERS):
            return True
    return False


_GERMAN_COMMON = frozenset("zahnarzt zahnarztin arzt arztin doktor lehrer lehrerin mann frau kind bibliothek oma opa "
                           "mutter vater bruder schwester nachbar nachbarin freund freundin hund katze stadt".split())


__all__ = ["FUNCTION_WORDS", "LISTS", "answer_type", "fold", "function_words"]
