//! Word lists for plausible-looking rows. Names are capitalised ASCII without spaces or digits, so
//! case/whitespace variants and generated emails stay unambiguous.

pub(crate) const FIRST_NAMES: &[&str] = &[
    "Emma", "Liam", "Olivia", "Noah", "Ava", "Elijah", "Sophia", "Lucas", "Mia", "Mason", "Amelia", "Ethan", "Harper",
    "Logan", "Evelyn", "James", "Abigail", "Aiden", "Emily", "Jacob", "Ella", "Michael", "Chloe", "Daniel", "Grace",
    "Henry", "Zoe", "Jackson", "Lily", "Samuel", "Nora", "Owen", "Hannah", "Leo", "Aria", "Wyatt", "Layla", "Caleb",
    "Riley", "Isaac", "Maya", "Omar", "Priya", "Wei", "Yuki", "Mateo", "Lucia", "Tariq", "Ines", "Kofi",
];

pub(crate) const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Okafor",
    "Kowalski",
    "Haddad",
    "Tanaka",
];

pub(crate) const EMAIL_DOMAINS: &[&str] = &["example.com", "mail.example.org", "inbox.example.net", "clinic.example"];

pub(crate) const STREETS: &[&str] = &[
    "Maple St",
    "Oak Ave",
    "Pine Rd",
    "Cedar Ln",
    "Elm St",
    "Main St",
    "Lakeview Dr",
    "Hillcrest Rd",
    "Sunset Blvd",
    "River Rd",
];

pub(crate) const CITIES: &[(&str, &str)] = &[
    ("Springfield", "IL"),
    ("Portland", "OR"),
    ("Austin", "TX"),
    ("Madison", "WI"),
    ("Columbus", "OH"),
    ("Raleigh", "NC"),
    ("Boulder", "CO"),
    ("Albany", "NY"),
    ("Tucson", "AZ"),
    ("Burlington", "VT"),
];

pub(crate) const ALLERGIES: &[&str] = &[
    "peanuts",
    "penicillin",
    "latex",
    "tree nuts",
    "shellfish",
    "eggs",
    "milk",
    "soy",
    "bee stings",
    "sulfa drugs",
];

pub(crate) const NOTES: &[&str] = &[
    "Routine follow-up.",
    "Mild asthma, uses inhaler as needed.",
    "Speech delay noted; referred to therapist.",
    "Family history of diabetes.",
    "Vaccinations up to date.",
    "Prefers morning appointments.",
    "Recovering from ear infection.",
    "Wears glasses since age 6.",
];

pub(crate) const PARENT_NOTES: &[&str] = &[
    "Allergic to cats, I think.",
    "Sleeps badly after screen time.",
    "Loves drawing.",
    "Had chickenpox last spring.",
    "Afraid of needles, please be patient.",
    "Picky eater.",
];

/// Legacy role spellings the rules map, by family.
pub(crate) const PARENT_ROLES_LEGACY: &[&str] = &["Parent", "PARENT"];
pub(crate) const CLINICIAN_ROLES_LEGACY: &[&str] = &["doctor", "Doctor"];
/// Roles the rules do not know: their users must be rejected.
pub(crate) const UNKNOWN_ROLES: &[&str] = &["nurse", "superuser", "receptionist", "Guest", "billing"];

/// Gender values that map (`M/male`, `F/female`, `other`) or fall to `unknown` in an expected way.
pub(crate) const GENDERS: &[(&str, u32)] = &[
    ("M", 25),
    ("F", 25),
    ("male", 15),
    ("female", 15),
    ("U", 8),
    ("other", 4),
    ("", 4),
];
/// Values outside the scenario's list; they all map to `unknown`.
pub(crate) const ODD_GENDERS: &[&str] = &["X", "?", "N/A", "unknown"];

/// Phones that cannot be read as a number (no digit at all).
pub(crate) const BAD_PHONES: &[&str] = &["n/a", "call me", "unknown", "none", "-", "ask mom"];
/// Emails that are not an address (no `@`).
pub(crate) const BAD_EMAILS: &[&str] = &["not-an-email", "n/a", "jane.doe(at)mail.example.com", "none", "unknown"];

pub(crate) const RELATIONSHIPS: &[&str] = &["mother", "father", "guardian", "grandparent", "step-parent"];
pub(crate) const SCOPES: &[&str] = &["all", "screenings", "appointments", "documents"];
pub(crate) const SCREENING_KINDS: &[&str] = &["ASQ-3", "M-CHAT-R/F", "PHQ-9", "vision", "hearing", "SDQ"];
pub(crate) const APPOINTMENT_STATUSES: &[&str] = &["scheduled", "completed", "cancelled", "no-show"];
pub(crate) const APPOINTMENT_NOTES: &[&str] = &[
    "Annual check-up.",
    "Follow-up on screening.",
    "Parent requested call back.",
    "Bring vaccination card.",
];
pub(crate) const DOCUMENT_KINDS: &[(&str, &str)] = &[
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("txt", "text/plain"),
];

/// bcrypt's base-64 alphabet.
pub(crate) const BCRYPT_ALPHABET: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
