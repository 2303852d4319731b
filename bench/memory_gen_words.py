"""What the people of `bench/memory_gen.py` talk about: names, the facts they share (what is
said, and how a later question names it), outings, time words, chit-chat, and the question
templates. Data only."""

NAMES = [
    "Maria",
    "Jon",
    "Aisha",
    "Tomas",
    "Priya",
    "Lukas",
    "Mei",
    "Daniel",
    "Sofia",
    "Kwame",
    "Elena",
    "Marcus",
    "Yuki",
    "Omar",
    "Hannah",
    "Diego",
    "Ingrid",
    "Ravi",
    "Chloe",
    "Mateo",
    "Leila",
    "Felix",
    "Nadia",
    "Oscar",
    "Zara",
    "Hugo",
    "Amara",
    "Finn",
    "Rosa",
    "Ivan",
]

#: (what is said, how a question names it): a city said, its country asked, and so on
TRAVEL = [
    ("Toronto", "Canada"),
    ("Kyoto", "Japan"),
    ("Lisbon", "Portugal"),
    ("Marrakech", "Morocco"),
    ("Cusco", "Peru"),
    ("Hanoi", "Vietnam"),
    ("Munich", "Germany"),
    ("Florence", "Italy"),
    ("Reykjavik", "Iceland"),
    ("Melbourne", "Australia"),
    ("Seville", "Spain"),
    ("Edinburgh", "Scotland"),
    ("Nairobi", "Kenya"),
    ("Oaxaca", "Mexico"),
    ("Bergen", "Norway"),
]
PETS = [
    ("greyhound", "dog"),
    ("beagle", "dog"),
    ("golden retriever", "dog"),
    ("tabby", "cat"),
    ("Siamese kitten", "cat"),
    ("cockatiel", "bird"),
    ("parakeet", "bird"),
    ("bearded dragon", "reptile"),
    ("rabbit", "bunny"),
    ("goldfish", "fish"),
]
PET_NAMES = [
    "Biscuit",
    "Luna",
    "Pepper",
    "Mochi",
    "Ziggy",
    "Olive",
    "Rocket",
    "Clover",
    "Nugget",
    "Pickles",
    "Juniper",
]
JOBS = [
    ("nurse at the children's hospital", "work in healthcare"),
    ("paramedic", "work in emergency medicine"),
    ("junior architect at a design firm", "design buildings"),
    ("accountant", "work in finance"),
    ("high school chemistry teacher", "teach"),
    ("software developer at a startup", "work in tech"),
    ("barista at a coffee shop downtown", "make coffee for a living"),
    ("sous chef at an Italian restaurant", "cook professionally"),
    ("veterinary assistant", "work with animals"),
    ("electrician", "do electrical work"),
]
HOBBIES = [
    ("pottery", "ceramics"),
    ("salsa", "dancing"),
    ("violin", "a string instrument"),
    ("watercolor", "painting"),
    ("bouldering", "climbing"),
    ("Mandarin", "a language"),
    ("woodworking", "carpentry"),
    ("chess", "a board game"),
    ("swimming", "a water sport"),
    ("photography", "taking pictures"),
    ("knitting", "a craft"),
    ("guitar", "an instrument"),
]
BOOKS = [
    "The Overstory",
    "Project Hail Mary",
    "Educated",
    "Circe",
    "The Midnight Library",
    "Sapiens",
    "Atomic Habits",
    "Piranesi",
    "The Night Circus",
    "Born a Crime",
]
INJURIES = [
    ("sprained my ankle playing basketball", "hurt", "leg"),
    ("broke my wrist falling off my bike", "injured", "arm"),
    ("pulled a muscle in my back lifting boxes", "hurt", "back"),
    ("got a concussion during a soccer match", "injured", "head"),
]
FAMILY = [
    ("sister", "had a baby boy", "became an aunt or uncle"),
    ("brother", "got engaged", "is going to a wedding soon"),
    ("mom", "retired after thirty years", "has a parent who stopped working"),
    ("grandpa", "turned ninety", "celebrated an elderly relative's birthday"),
]
ALLERGIES = [("peanuts", "nuts"), ("shellfish", "seafood"), ("gluten", "wheat"), ("dairy", "milk")]
MOVES = [
    ("a flat near the river in Riverside", "Riverside"),
    ("a small house in Oak Hill", "Oak Hill"),
    ("an apartment downtown by the station", "downtown"),
    ("a cottage outside town", "the countryside"),
]
CARS = [
    ("used Subaru", "car"),
    ("electric scooter", "way to get around"),
    ("secondhand pickup truck", "vehicle"),
    ("cargo bike", "bicycle"),
]
BANDS = [
    "Arctic Monkeys",
    "Fleetwood Mac tribute band",
    "the city symphony",
    "Bon Iver",
    "a jazz quartet",
    "Coldplay",
]
COURSES = [
    ("data science", "statistics and programming"),
    ("French", "a foreign language"),
    ("graphic design", "visual design"),
    ("nutrition", "healthy eating"),
    ("creative writing", "writing fiction"),
]
RACES = [
    ("half marathon", "a running race"),
    ("triathlon", "an endurance event"),
    ("10k charity run", "a running race"),
    ("cycling tour", "a long bike ride"),
]
VOLUNTEER = [
    ("the animal shelter", "helping animals"),
    ("a food bank", "feeding people"),
    ("the community garden", "growing vegetables for neighbours"),
    ("a literacy program", "teaching kids to read"),
]
#: a question asked by one person, and the other's answer that only makes sense after it
EVENTS = [
    ("road trip", "we drove the coast and hiked to a waterfall", "hiking to a waterfall"),
    ("camping weekend", "we saw the northern lights from the tent", "seeing the aurora"),
    ("cousin's wedding", "I gave a toast and everyone cried", "giving a speech"),
    (
        "work conference",
        "I presented our project to about two hundred people",
        "presenting to a big audience",
    ),
    ("cooking class", "we made fresh pasta from scratch", "making noodles by hand"),
    ("beach holiday", "I finally learned to surf", "surfing"),
    ("museum visit", "the dinosaur skeletons were incredible", "the fossils"),
    ("job interview", "they offered me the position on the spot", "getting hired"),
]
WHEN_WORDS = [
    ("yesterday", 1),
    ("two days ago", 2),
    ("last week", 7),
    ("last weekend", None),
    ("three days ago", 3),
    ("last Saturday", None),
    ("a week ago", 7),
    ("two weeks ago", 14),
]
CHITCHAT = [
    "Haha, that's so true!",
    "How's work been this week?",
    "Work has been crazy lately.",
    "Any plans for the weekend?",
    "I really need a vacation.",
    "That sounds amazing!",
    "I'm so happy for you!",
    "Oh no, I'm sorry to hear that.",
    "Let's catch up soon.",
    "My neighbor's dog barks all night, it's driving me nuts.",
    "I watched a documentary about travel in Asia last night.",
    "Did you see the game on Sunday?",
    "The weather has been terrible.",
    "I've been trying to read more books this year.",
    "Coffee is the only thing keeping me going.",
    "We should plan a trip together sometime.",
    "My class ran late again today.",
    "I keep meaning to start a new hobby.",
    "Thanks for asking, I'm doing well!",
    "Family dinners are always chaotic at our place.",
    "I finally cleaned my whole apartment.",
    "The traffic downtown was awful this morning.",
    "Running errands all day, so tired.",
    "I tried a new recipe and it was a disaster, haha.",
    "Music always helps me relax.",
]


MULTI_ONE = {
    "travel": "Which countries has {p} planned trips to?",
    "hobby": "What activities has {p} picked up?",
    "pet": "What animals has {p} adopted?",
    "book": "Which novels has {p} recommended?",
    "course": "What classes has {p} taken online?",
}
MULTI_BOTH = {
    "pet": "What pets do {a} and {b} have?",
    "job": "What do {a} and {b} do for work?",
    "hobby": "What pastimes do {a} and {b} enjoy?",
    "move": "Where do {a} and {b} live?",
    "race": "What are {a} and {b} training for?",
}


DECK = [
    "travel",
    "travel",
    "hobby",
    "hobby",
    "pet",
    "job",
    "book",
    "family",
    "allergy",
    "move",
    "car",
    "course",
    "race",
    "event",
    "event",
    "event",
    "injury",
    "concert",
    "volunteer",
]
GREETINGS = ["Hey! Long time no talk.", "Hi, how are you?", "Good morning!", "Hey, got a minute?"]
REACTIONS = [
    "Wow, really?",
    "That's great news!",
    "No way!",
    "Oh, tell me more.",
    "That sounds wonderful.",
]

#: later news about a pet, which names only the pet ("Pepper won a ribbon"): a question
#: about "Maria's dog" needs the turn that says Pepper is her dog as well
PET_NEWS = [
    "won a ribbon at the local pet show",
    "escaped through the fence and we searched the whole street for hours",
    "got a clean bill of health at the vet",
    "chewed through my laptop charger",
    "learned to ring a bell when it wants dinner",
]
#: later trouble with a vehicle, which names only the make ("The Subaru"): same idea
CAR_NEWS = [
    "broke down on the motorway and had to be towed",
    "got a flat tyre in the pouring rain",
    "failed its inspection because of the brakes",
]
#: ways to say "I'm training for a race": questions say "training for", most turns do not
RACE_SAYINGS = [
    "I'm training for a {race} in the autumn, up at six every day.",
    "Signed up for a {race} in the autumn, so it's early mornings from now on.",
    "Up at six every day now: the {race} is in the autumn.",
]
