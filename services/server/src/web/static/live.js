// Live updates of an open timeline (server-sent events). The page works without this script:
// it only adds entries written while the page is open, and says so in the status line.
(function () {
  'use strict';
  var timeline = document.querySelector('[data-live]');
  if (!timeline || !window.EventSource) return;
  var status = document.getElementById('live-status');
  var source = new EventSource(timeline.getAttribute('data-live'));
  timeline.setAttribute('data-live-state', 'open');

  function say(text) {
    if (status) status.textContent = text;
  }

  function dayList(day, heading) {
    var section = timeline.querySelector('section[data-day="' + day + '"]');
    if (!section) {
      section = document.createElement('section');
      section.className = 'day';
      section.setAttribute('data-day', day);
      section.setAttribute('aria-labelledby', 'dag-' + day);
      var h2 = document.createElement('h2');
      h2.id = 'dag-' + day;
      var time = document.createElement('time');
      time.setAttribute('datetime', day);
      time.textContent = heading;
      h2.appendChild(time);
      section.appendChild(h2);
      var list = document.createElement('ol');
      list.className = 'entries';
      section.appendChild(list);
      // Days in order: before the first later day, else at the end.
      var later = null;
      timeline.querySelectorAll('section[data-day]').forEach(function (s) {
        if (!later && s.getAttribute('data-day') > day) later = s;
      });
      timeline.insertBefore(section, later);
      var empty = timeline.querySelector('.empty');
      if (empty) empty.remove();
    }
    return section.querySelector('ol.entries');
  }

  source.addEventListener('entry', function (event) {
    var data = JSON.parse(event.data);
    if (timeline.querySelector('[data-revision="' + data.revision + '"]')) return;
    // The HTML comes escaped from the server, entry by entry.
    dayList(data.day, data.heading).insertAdjacentHTML('beforeend', data.html);
    say('Nieuw op de tijdlijn (' + data.heading + ').');
  });

  source.addEventListener('end', function (event) {
    source.close();
    timeline.setAttribute('data-live-state', 'ended');
    say(event.data);
  });

  source.addEventListener('error', function () {
    if (source.readyState === EventSource.CLOSED) {
      timeline.setAttribute('data-live-state', 'ended');
      say('Live bijwerken is gestopt. Laad de pagina opnieuw om de nieuwste stand te zien.');
    }
  });
})();
