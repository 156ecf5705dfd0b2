// placeholder: replaced by the browser client (issue 3)
export class RealtimeClient {}
