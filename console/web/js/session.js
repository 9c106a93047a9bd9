// Who is logged in; pages ask it whether a role allows an action.
const RANK = { viewer: 0, analyst: 1, admin: 2 };

let user = null;

export function currentUser() {
  return user;
}

export function setUser(value) {
  user = value;
}

/** Whether the current user has `role` or a higher one. */
export function may(role) {
  return user !== null && (RANK[user.role] ?? -1) >= RANK[role];
}
