"""Capital cities for a small real model: "What is the capital of Peru?", the capital in each
row's metadata (`{"answer": "Lima"}`) for the rule critic `seft.tasks.answers:mentions`.
SmolLM2-135M-Instruct knows many capitals but, sampled, often drifts into a story about the
country, answers in another language, or names the wrong city. Those faults show in the answer
itself, so a reviser can learn which answers to leave alone: what SEFT's adaptive reviser is for.

The ranked questions ask for the capitals of countries and US states; the evolution prompts,
which need no answers, for those of other countries' regions: the policy learns to answer
plainly without meeting a held-out question.
`python -m seft.tasks.capitals DIR` writes questions.jsonl and prompts.jsonl."""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Countries with one capital under one common English name, not the country's own (La Paz/Sucre,
# Kyiv/Kiev, Singapore and the like are left out: the critic's answer is no matter of opinion).
COUNTRIES = {
    "Afghanistan": "Kabul", "Albania": "Tirana", "Algeria": "Algiers", "Angola": "Luanda",
    "Argentina": "Buenos Aires", "Armenia": "Yerevan", "Australia": "Canberra", "Austria": "Vienna",
    "Azerbaijan": "Baku", "Bahrain": "Manama", "Bangladesh": "Dhaka", "Belarus": "Minsk",
    "Belgium": "Brussels", "Bhutan": "Thimphu", "Botswana": "Gaborone", "Brazil": "Brasilia",
    "Bulgaria": "Sofia", "Burkina Faso": "Ouagadougou", "Burundi": "Gitega", "Cambodia": "Phnom Penh",
    "Cameroon": "Yaounde", "Canada": "Ottawa", "Chad": "N'Djamena", "Chile": "Santiago",
    "China": "Beijing", "Colombia": "Bogota", "Costa Rica": "San Jose", "Croatia": "Zagreb",
    "Cuba": "Havana", "Cyprus": "Nicosia", "the Czech Republic": "Prague", "Denmark": "Copenhagen",
    "the Dominican Republic": "Santo Domingo", "Ecuador": "Quito",
    "Egypt": "Cairo", "El Salvador": "San Salvador", "Eritrea": "Asmara", "Estonia": "Tallinn",
    "Ethiopia": "Addis Ababa", "Fiji": "Suva", "Finland": "Helsinki", "France": "Paris",
    "Gabon": "Libreville", "Georgia": "Tbilisi", "Germany": "Berlin", "Ghana": "Accra",
    "Greece": "Athens", "Guatemala": "Guatemala City", "Guinea": "Conakry", "Guyana": "Georgetown",
    "Haiti": "Port-au-Prince", "Honduras": "Tegucigalpa", "Hungary": "Budapest", "Iceland": "Reykjavik",
    "India": "Delhi", "Indonesia": "Jakarta", "Iran": "Tehran", "Iraq": "Baghdad",
    "Ireland": "Dublin", "Italy": "Rome", "Jamaica": "Kingston", "Japan": "Tokyo", "Jordan": "Amman",
    "Kenya": "Nairobi", "Kuwait": "Kuwait City", "Kyrgyzstan": "Bishkek", "Laos": "Vientiane",
    "Latvia": "Riga", "Lebanon": "Beirut", "Lesotho": "Maseru", "Liberia": "Monrovia",
    "Libya": "Tripoli", "Lithuania": "Vilnius", "Madagascar": "Antananarivo",
    "Malawi": "Lilongwe", "Malaysia": "Kuala Lumpur", "Mali": "Bamako", "Malta": "Valletta",
    "Mauritania": "Nouakchott", "Mexico": "Mexico City", "Moldova": "Chisinau", "Mongolia": "Ulaanbaatar",
    "Montenegro": "Podgorica", "Morocco": "Rabat", "Mozambique": "Maputo", "Namibia": "Windhoek",
    "Nepal": "Kathmandu", "New Zealand": "Wellington", "Nicaragua": "Managua", "Niger": "Niamey",
    "Nigeria": "Abuja", "North Korea": "Pyongyang", "Norway": "Oslo", "Oman": "Muscat",
    "Pakistan": "Islamabad", "Panama": "Panama City", "Paraguay": "Asuncion", "Peru": "Lima",
    "the Philippines": "Manila", "Poland": "Warsaw", "Portugal": "Lisbon", "Qatar": "Doha",
    "Romania": "Bucharest", "Russia": "Moscow", "Rwanda": "Kigali", "Saudi Arabia": "Riyadh",
    "Senegal": "Dakar", "Serbia": "Belgrade", "Sierra Leone": "Freetown",
    "Slovakia": "Bratislava", "Slovenia": "Ljubljana", "Somalia": "Mogadishu", "South Korea": "Seoul",
    "Spain": "Madrid", "Sudan": "Khartoum", "Suriname": "Paramaribo", "Sweden": "Stockholm",
    "Switzerland": "Bern", "Syria": "Damascus", "Taiwan": "Taipei", "Tajikistan": "Dushanbe",
    "Thailand": "Bangkok", "Togo": "Lome", "Tunisia": "Tunis", "Turkey": "Ankara",
    "Turkmenistan": "Ashgabat", "Uganda": "Kampala", "the United Kingdom": "London",
    "the United States": "Washington", "Uruguay": "Montevideo", "Uzbekistan": "Tashkent",
    "Venezuela": "Caracas", "Vietnam": "Hanoi", "Yemen": "Sanaa", "Zambia": "Lusaka", "Zimbabwe": "Harare",
}
STATES = {
    "Alabama": "Montgomery", "Alaska": "Juneau", "Arizona": "Phoenix", "Arkansas": "Little Rock",
    "California": "Sacramento", "Colorado": "Denver", "Connecticut": "Hartford", "Delaware": "Dover",
    "Florida": "Tallahassee", "Georgia": "Atlanta", "Hawaii": "Honolulu", "Idaho": "Boise",
    "Illinois": "Springfield", "Indiana": "Indianapolis", "Iowa": "Des Moines", "Kansas": "Topeka",
    "Kentucky": "Frankfort", "Louisiana": "Baton Rouge", "Maine": "Augusta", "Maryland": "Annapolis",
    "Massachusetts": "Boston", "Michigan": "Lansing", "Minnesota": "Saint Paul", "Mississippi": "Jackson",
    "Missouri": "Jefferson City", "Montana": "Helena", "Nebraska": "Lincoln", "Nevada": "Carson City",
    "New Hampshire": "Concord", "New Jersey": "Trenton", "New Mexico": "Santa Fe", "New York": "Albany",
    "North Carolina": "Raleigh", "North Dakota": "Bismarck", "Ohio": "Columbus", "Oklahoma": "Oklahoma City",
    "Oregon": "Salem", "Pennsylvania": "Harrisburg", "Rhode Island": "Providence",
    "South Carolina": "Columbia", "South Dakota": "Pierre", "Tennessee": "Nashville", "Texas": "Austin",
    "Utah": "Salt Lake City", "Vermont": "Montpelier", "Virginia": "Richmond", "Washington": "Olympia",
    "West Virginia": "Charleston", "Wisconsin": "Madison", "Wyoming": "Cheyenne",
}
# Evolution prompts need no answers: other countries' regions, unlike any ranked question.
REGIONS = {
    ("German", "state"): ["Bavaria", "Saxony", "Hesse", "Lower Saxony", "Brandenburg", "Thuringia",
                          "Baden-Wurttemberg", "North Rhine-Westphalia", "Saxony-Anhalt", "Schleswig-Holstein"],
    ("Canadian", "province"): ["Ontario", "Quebec", "British Columbia", "Alberta", "Manitoba", "Saskatchewan",
                               "Nova Scotia", "New Brunswick", "Newfoundland and Labrador", "Prince Edward Island"],
    ("Australian", "state"): ["New South Wales", "Victoria", "Queensland", "Western Australia", "South Australia",
                              "Tasmania"],
    ("Indian", "state"): ["Maharashtra", "Kerala", "Tamil Nadu", "Karnataka", "Gujarat", "Rajasthan", "Punjab",
                          "West Bengal", "Bihar", "Odisha", "Assam", "Goa", "Telangana", "Uttar Pradesh"],
    ("Brazilian", "state"): ["Bahia", "Minas Gerais", "Amazonas", "Parana", "Pernambuco", "Ceara", "Para",
                             "Rio Grande do Sul", "Santa Catarina", "Goias"],
    ("Mexican", "state"): ["Jalisco", "Yucatan", "Oaxaca", "Chihuahua", "Sonora", "Veracruz", "Puebla",
                           "Nuevo Leon", "Chiapas", "Guerrero"],
    ("Italian", "region"): ["Tuscany", "Lombardy", "Sicily", "Sardinia", "Piedmont", "Veneto", "Campania",
                            "Lazio", "Liguria", "Apulia"],
    ("Spanish", "region"): ["Catalonia", "Andalusia", "Galicia", "Aragon", "Valencia", "Castile and Leon",
                            "the Basque Country", "Murcia"],
    ("Chinese", "province"): ["Guangdong", "Sichuan", "Yunnan", "Hubei", "Hunan", "Zhejiang", "Jiangsu",
                              "Shandong", "Henan", "Fujian"],
    ("Japanese", "prefecture"): ["Hokkaido", "Okinawa", "Osaka", "Kyoto", "Hiroshima", "Fukuoka", "Aichi",
                                 "Miyagi", "Nagano", "Kanagawa"],
}


def questions() -> list[dict]:
    countries = [(f"What is the capital of {country}?", city) for country, city in COUNTRIES.items()]
    states = [(f"What is the capital of the US state of {state}?", city) for state, city in STATES.items()]
    return [{"id": f"q{i}", "prompt": q, "metadata": {"answer": city}}
            for i, (q, city) in enumerate(countries + states)]


def prompts() -> list[dict]:
    asked = [f"What is the capital of the {adjective} {kind} of {name}?"
             for (adjective, kind), names in REGIONS.items() for name in names]
    return [{"id": f"p{i}", "prompt": q} for i, q in enumerate(asked)]


def main(out: str) -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    for name, rows in (("questions.jsonl", questions()), ("prompts.jsonl", prompts())):
        (Path(out) / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main(sys.argv[1])
