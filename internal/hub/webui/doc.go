// Package webui owns the hub's web dashboard: a small single-page app
// (assets/index.html, app.js, style.css) embedded in the binary and served
// at / with a Content-Security-Policy that lets the page talk to the hub
// only. It reads and changes everything through the REST API under
// /api/v1; it must not import the hub's services or the API package.
package webui
