"""Polygons of the MediaPipe 468-point face mesh for the LaPa facial-part classes.

LaPa's "left"/"right" parts are the ones on the image's left/right (the subject's right/left
in an unmirrored video), i.e. LaPa's left eye (class 4) is the mesh's RIGHT eye (points 33, 133, ...);
FaRL's LaPa parser names classes 2-5 ``rb, lb, re, le`` (the subject's sides), which agrees.
"""
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
CHIN = 152
# subject's right side = image left
SUBJECT_RIGHT_BROW = (46, 53, 52, 65, 55, 107, 66, 105, 63, 70)
SUBJECT_LEFT_BROW = (276, 283, 282, 295, 285, 336, 296, 334, 293, 300)
SUBJECT_RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
SUBJECT_LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
NOSE = (168, 417, 351, 419, 248, 281, 363, 360, 279, 358, 327, 326, 2, 97, 98, 129, 49, 131, 134, 51,
        3, 196, 122, 193)
_UPPER_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
_LOWER_OUTER = (291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
_UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
_LOWER_INNER = (308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
UPPER_LIP = _UPPER_OUTER + tuple(reversed(_UPPER_INNER))
LOWER_LIP = (61,) + tuple(reversed(_LOWER_OUTER)) + (291,) + _LOWER_INNER[1:] + (78,)
INNER_MOUTH = _UPPER_INNER + _LOWER_INNER

# LaPa class -> polygon, painted in this order (later ones on top)
PART_POLYGONS = (
    (6, NOSE),
    (2, SUBJECT_RIGHT_BROW), (3, SUBJECT_LEFT_BROW),
    (4, SUBJECT_RIGHT_EYE), (5, SUBJECT_LEFT_EYE),
    (7, UPPER_LIP), (9, LOWER_LIP), (8, INNER_MOUTH),
)
